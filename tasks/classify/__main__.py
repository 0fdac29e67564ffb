from tasks.classify.task import main

if __name__ == "__main__":
    main()
